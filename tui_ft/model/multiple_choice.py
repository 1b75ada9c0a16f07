"""Multiple-choice scoring by log-likelihood, as lm-evaluation-harness scores MMLU:
each choice's continuation (" A", " B", ...) gets the summed log-probability of its
tokens after the prompt, and the most likely choice is the model's answer.

Tokens are split as lm-eval splits them: the continuation's tokens are those the
whole text (prompt + continuation) has after the prompt's own tokens. A sequence
longer than the context is cut from the left (lm-eval keeps the last
context_length + 1 tokens and predicts the last from the rest), and counted.

Requests run in batches on the model's device, longest first (an out-of-memory shows
in the first batch). Rows are padded on the right: attention is causal, so padding
after a row's tokens changes nothing before them. When every continuation of a
question is one token (MMLU's letters), its choices share one row: the log-softmax
at the prompt's last position scores them all."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from ..data.choices import Question, continuations, prompt
from ..data.tokenizer import EOT_ID, encode_batch

if TYPE_CHECKING:
    from .gpt import GPT


@dataclass(frozen=True)
class Request:
    """One question's prompt tokens and each choice's continuation tokens."""

    context: list[int]
    choices: list[list[int]]


@dataclass(frozen=True)
class Scored:
    logprobs: list[float]  # per choice: summed log-probability of its tokens
    truncated: bool  # the prompt was cut from the left to fit the context

    @property
    def predicted(self) -> int:
        return max(range(len(self.logprobs)), key=self.logprobs.__getitem__)


@dataclass
class _Row:
    ids: list[int]
    # (request index, choice index, first scored position, target tokens)
    targets: list[tuple[int, int, int, list[int]]]


def encode_requests(contexts: Sequence[str],
                    conts: Sequence[Sequence[str]]) -> list[Request]:
    """Token requests for texts: prompt tokens, and each continuation's tokens as
    the tokens of prompt + continuation after the prompt's (lm-eval's split)."""
    flat_whole = [c + k for c, ks in zip(contexts, conts) for k in ks]
    ctx_ids = encode_batch(list(contexts))
    whole_ids = encode_batch(flat_whole)
    out, at = [], 0
    for ctx, ks in zip(ctx_ids, conts):
        choices = [whole_ids[at + j][len(ctx):] for j in range(len(ks))]
        at += len(ks)
        if any(not c for c in choices):
            raise ValueError("a continuation has no tokens of its own")
        out.append(Request(ctx, choices))
    return out


def question_requests(questions: Sequence[Question],
                      shots: Sequence[Sequence[Question]] | None = None) -> list[Request]:
    """The requests of multiple-choice questions in lm-eval's MMLU prompt."""
    shots = shots if shots is not None else [()] * len(questions)
    return encode_requests([prompt(q, s) for q, s in zip(questions, shots)],
                           [continuations(q) for q in questions])


def _rows(requests: Sequence[Request], context_length: int) -> tuple[list[_Row], list[bool]]:
    rows, truncated = [], []
    for r, req in enumerate(requests):
        cut = False
        if all(len(c) == 1 for c in req.choices):
            ids = req.context[-context_length:] if req.context else [EOT_ID]
            cut = len(req.context) > context_length
            rows.append(_Row(ids, [(r, j, len(ids) - 1, c) for j, c in
                                   enumerate(req.choices)]))
        else:
            for j, cont in enumerate(req.choices):
                if len(cont) > context_length:
                    raise ValueError(f"a continuation of {len(cont)} tokens is longer than "
                                     f"the model's context ({context_length})")
                # Without a prompt the first token is predicted from end-of-text.
                full = (req.context or [EOT_ID]) + cont
                if len(full) > context_length + 1:
                    full = full[-(context_length + 1):]
                    cut = True
                ids = full[:-1]
                rows.append(_Row(ids, [(r, j, len(ids) - len(cont), cont)]))
        truncated.append(cut)
    return rows, truncated


def score_requests(model: "GPT", requests: Sequence[Request], *, batch_size: int = 16,
                   progress: Callable[[int, int], None] | None = None) -> list[Scored]:
    """Each request's per-choice summed log-probabilities, batched on the model's
    device (the model is used as it is: eval mode, its dtype)."""
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    rows, truncated = _rows(requests, model.config.context_length)
    sums = [[0.0] * len(req.choices) for req in requests]
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i].ids))
    device = next(model.parameters()).device
    done = 0
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = [rows[i] for i in order[start:start + batch_size]]
            width = len(batch[0].ids)
            ids = torch.full((len(batch), width), EOT_ID, dtype=torch.long)
            b_idx, t_idx, tokens, owners = [], [], [], []
            for b, row in enumerate(batch):
                ids[b, :len(row.ids)] = torch.tensor(row.ids)
                for r, j, first, cont in row.targets:
                    for k, token in enumerate(cont):
                        b_idx.append(b)
                        t_idx.append(first + k)
                        tokens.append(token)
                        owners.append((r, j))
            hidden = model.hidden_states(ids.to(device))
            picked = hidden[torch.tensor(b_idx, device=device),
                            torch.tensor(t_idx, device=device)]
            # Only the scored positions are projected onto the vocabulary.
            logp = torch.log_softmax(model.lm_head(picked), dim=-1, dtype=torch.float32)
            got = logp.gather(1, torch.tensor(tokens, device=device).unsqueeze(1))
            for (r, j), value in zip(owners, got.squeeze(1).tolist()):
                sums[r][j] += value
            done += len(batch)
            if progress is not None:
                progress(done, len(rows))
    return [Scored(s, t) for s, t in zip(sums, truncated)]


def score_questions(model: "GPT", questions: Sequence[Question],
                    shots: Sequence[Sequence[Question]] | None = None, *,
                    batch_size: int = 16,
                    progress: Callable[[int, int], None] | None = None) -> list[Scored]:
    return score_requests(model, question_requests(questions, shots),
                          batch_size=batch_size, progress=progress)


def summarize(questions: Sequence[Question], scored: Sequence[Scored]) -> dict:
    """{"n", "accuracy", "per_subject": {subject: {"n", "accuracy"}}, "truncated"}:
    the accuracy over all questions, and each subject's (subjects sorted by name)."""
    per: dict[str, list[int]] = {}
    for q, s in zip(questions, scored):
        counts = per.setdefault(q.subject, [0, 0])
        counts[0] += 1
        counts[1] += int(s.predicted == q.answer)
    n = sum(c[0] for c in per.values())
    correct = sum(c[1] for c in per.values())
    return {
        "n": n,
        "accuracy": correct / n if n else 0.0,
        "correct": correct,
        "per_subject": {name: {"n": c[0], "accuracy": c[1] / c[0], "correct": c[1]}
                        for name, c in sorted(per.items())},
        "truncated": sum(s.truncated for s in scored),
    }
