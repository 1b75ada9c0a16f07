"""`tui-ft eval mc` (issue 17): multiple-choice questions read from MMLU's CSV layout
and JSONL with located errors, put in lm-eval's MMLU prompt, and scored by the
log-likelihood of each choice: the batched scorer equals one unbatched forward pass
per choice, a model planted to say one letter answers that letter, and the CLI
reports the same accuracy on the shipped sample."""

from __future__ import annotations

import json
import os

import pytest
import torch

from tui_ft.data.choices import (ChoiceFileError, Question, pick_shots, prompt,
                                 read_questions, subject_of)
from tui_ft.data.tokenizer import EOT_ID, encode
from tui_ft.model.multiple_choice import (Request, encode_requests, question_requests,
                                          score_questions, score_requests, summarize)
from tui_ft.model.weights import load_model, save_checkpoint_weights

SAMPLE = "@sample/mc"


@pytest.fixture(scope="module")
def tiny():
    model, _ = load_model("tiny")
    return model


@pytest.fixture(scope="module")
def sample_questions(sample_data_dir):
    return read_questions(sample_data_dir / "mc")


def brute_force(model, request: Request) -> list[float]:
    """Each choice on its own: prompt + continuation, one unbatched forward pass, cut
    from the left to context + 1 tokens as lm-eval does, the log-probabilities of the
    continuation's tokens summed."""
    c = model.config.context_length
    out = []
    for cont in request.choices:
        full = (request.context or [EOT_ID]) + cont
        full = full[-(c + 1):]
        ids = torch.tensor([full[:-1]])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids)[0].float(), dim=-1)
        start = len(full) - 1 - len(cont)
        out.append(sum(logp[start + k, t].item() for k, t in enumerate(cont)))
    return out


def assert_matches_brute_force(model, requests, scored):
    for req, got in zip(requests, scored):
        want = brute_force(model, req)
        assert got.logprobs == pytest.approx(want, abs=1e-5)
        assert got.predicted == max(range(len(want)), key=want.__getitem__)


# --------------------------------------------------------------------------- scorer


def test_batched_scores_equal_one_forward_pass_per_choice(tiny, sample_questions):
    questions = sample_questions[::7]  # all three subjects, both layouts
    shots = pick_shots(questions, 1, seed=1, pool=sample_questions)
    requests = question_requests(questions, shots)
    # Continuations of several tokens and of different lengths: a row per choice.
    requests += encode_requests(
        ["The capital of France is", "Two plus two is", ""],
        [[" Paris", " the city of London", " a large river in Germany"],
         [" four", " 4", " twenty-two, or so it seems"],
         ["Hello", " world again"]])
    assert all(len(r.choices[0]) == 1 for r in requests[:len(questions)])
    assert any(len(c) > 2 for c in requests[-1].choices + requests[-2].choices)
    want = [brute_force(tiny, req) for req in requests]
    # One row at a time, rows of several lengths padded together, everything at once.
    for batch_size in (1, 3, 64):
        scored = score_requests(tiny, requests, batch_size=batch_size)
        for w, got in zip(want, scored):
            assert got.logprobs == pytest.approx(w, abs=1e-5), batch_size
            assert got.predicted == max(range(len(w)), key=w.__getitem__)
        assert not any(s.truncated for s in scored)


def test_a_prompt_longer_than_the_context_is_cut_from_the_left(tiny):
    c = tiny.config.context_length
    long = " ".join(["filler words"] * c)
    requests = encode_requests([long + "\nAnswer:", long + " last", "short"],
                               [[" A", " B"], [" one", " two three four"], [" A", " B"]])
    assert len(requests[0].context) > c
    scored = score_requests(tiny, requests, batch_size=2)
    assert [s.truncated for s in scored] == [True, True, False]
    assert_matches_brute_force(tiny, requests, scored)


def test_continuations_are_split_from_the_whole_text_as_lm_eval_does():
    # " A" after "Answer:" is one token either way; after "Answer: " the space
    # belongs to the context, and the whole text's tokens decide the split.
    [req] = encode_requests(["Answer:"], [[" A", " B"]])
    assert req.context == encode("Answer:")
    assert req.choices == [encode(" A"), encode(" B")]
    [req] = encode_requests(["x ="], [[" 12345"]])
    whole = encode("x = 12345")
    assert req.choices == [whole[len(encode("x =")):]]


def letter_model(letter: str):
    """The tiny model planted to say `letter` (" A", " B", ...) after anything: the
    final LayerNorm's output is a constant vector that only that token's embedding
    meets, so its logit is 50 and every other token's 0."""
    model, _ = load_model("tiny")
    [token] = encode(" " + letter)
    with torch.no_grad():
        model.ln_f.weight.zero_()
        model.ln_f.bias.zero_()
        model.ln_f.bias[0] = 50.0
        model.wte.weight[:, 0] = 0.0
        model.wte.weight[token, 0] = 1.0
    return model


@pytest.mark.parametrize("letter", "ABCD")
def test_a_model_certain_of_one_letter_answers_it(sample_questions, letter):
    model = letter_model(letter)
    shots = pick_shots(sample_questions, 1, seed=0)
    scored = score_questions(model, sample_questions, shots, batch_size=7)
    index = "ABCD".index(letter)
    assert [s.predicted for s in scored] == [index] * len(sample_questions)
    for s in scored:
        assert s.logprobs[index] > -1e-3
        assert max(v for i, v in enumerate(s.logprobs) if i != index) < -40
    summary = summarize(sample_questions, scored)
    right = [q for q in sample_questions if q.answer == index]
    assert summary["n"] == len(sample_questions)
    assert summary["accuracy"] == len(right) / len(sample_questions)
    for subject, row in summary["per_subject"].items():
        mine = [q for q in sample_questions if q.subject == subject]
        assert row["n"] == len(mine)
        assert row["accuracy"] == sum(q.answer == index for q in mine) / len(mine)


# --------------------------------------------------------------------------- prompt


def test_the_prompt_is_lm_eval_s_mmlu_prompt():
    shot = Question("What is 1 + 1?", ("1", "2", "3", "4"), 1, "high_school_math", "x:1")
    q = Question("  What is 2 + 2?  ", ("3", "4", "5", "6"), 1, "high_school_math", "x:2")
    assert prompt(q, [shot]) == (
        "The following are multiple choice questions (with answers) about high school "
        "math.\n\n"
        "What is 1 + 1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n"
        "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:")


def test_shots_are_of_the_same_subject_never_the_question_and_follow_the_seed(
        sample_questions):
    shots = pick_shots(sample_questions, 3, seed=5)
    for q, s in zip(sample_questions, shots):
        assert len(s) == 3
        assert all(x.subject == q.subject and x is not q for x in s)
    assert pick_shots(sample_questions, 3, seed=5) == shots
    assert pick_shots(sample_questions, 3, seed=6) != shots
    assert pick_shots(sample_questions, 0, seed=5) == [[]] * len(sample_questions)


def test_shots_from_another_file_come_from_it_and_only_of_the_subject(sample_questions,
                                                                    tmp_path):
    dev = tmp_path / "arithmetic_dev.csv"
    dev.write_text("What is 1 + 1?,2,3,4,5,A\nWhat is 2 + 1?,2,3,4,5,B\n", encoding="utf-8")
    pool = read_questions(dev)
    shots = pick_shots(sample_questions, 5, seed=0, pool=pool)
    for q, s in zip(sample_questions, shots):
        if q.subject == "arithmetic":
            assert sorted(x.question for x in s) == ["What is 1 + 1?", "What is 2 + 1?"]
        else:
            assert s == []
    assert prompt(sample_questions[0], shots[0]).count("Answer:") == 3


# --------------------------------------------------------------------------- files


def test_the_shipped_sample_reads_in_both_layouts(sample_questions):
    subjects = {q.subject for q in sample_questions}
    assert subjects == {"arithmetic", "units_of_measure", "general_knowledge"}
    assert 40 <= len(sample_questions) <= 60
    assert all(len(q.choices) == 4 for q in sample_questions)
    # The answers are spread over the letters: one letter always is no good score.
    counts = [sum(q.answer == i for q in sample_questions) for i in range(4)]
    assert max(counts) - min(counts) <= 1


def test_subject_from_the_file_name():
    from pathlib import Path

    assert subject_of(Path("abstract_algebra_test.csv")) == "abstract_algebra"
    assert subject_of(Path("x/anatomy_dev.csv")) == "anatomy"
    assert subject_of(Path("mine.jsonl")) == "mine"


def test_csv_mmlu_layout_with_quotes_header_and_blank_lines(tmp_path):
    path = tmp_path / "world_history_test.csv"
    path.write_text('question,A,B,C,D,answer\n'
                    '"Which, of these?",x,y,z,w,d\n'
                    '\n'
                    '"A question\nover two lines",1,2,3,4, B \n', encoding="utf-8")
    qs = read_questions(path)
    assert [(q.question, q.choices, q.answer, q.subject) for q in qs] == [
        ("Which, of these?", ("x", "y", "z", "w"), 3, "world_history"),
        ("A question\nover two lines", ("1", "2", "3", "4"), 1, "world_history")]
    assert qs[1].where == f"{path}:4"


@pytest.mark.parametrize("body, line, words", [
    ('q,a,b,c,d,A\n"two\nlines",a,b,c,d,A\nq,a,b,c,d,E\n', 4, "answer 'E' is not one of"),
    ("q,a,b,c,d,A\nq,a,b,c,A\n", 2, "5 fields, expected 6"),
    ("q,a,b,c,d,A\nq,a,b,c,d,\n", 2, "answer '' is not one of"),
    ("q,a,b,c,d,AB\n", 1, "answer 'AB'"),
])
def test_a_bad_csv_row_is_located(tmp_path, body, line, words):
    path = tmp_path / "bad_test.csv"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ChoiceFileError) as err:
        read_questions(path)
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert words in str(err.value)


def test_jsonl_answers_by_index_or_letter_and_an_own_subject(tmp_path):
    path = tmp_path / "quiz.jsonl"
    path.write_text(
        json.dumps({"question": "q1", "choices": ["a", "b"], "answer": 1}) + "\n\n"
        + json.dumps({"question": "q2", "choices": list("abcde"), "answer": "e",
                      "subject": "letters"}) + "\n", encoding="utf-8")
    qs = read_questions(path)
    assert [(q.answer, q.subject, q.where) for q in qs] == [
        (1, "quiz", f"{path}:1"), (4, "letters", f"{path}:3")]


@pytest.mark.parametrize("record, words", [
    ("{not json", "not valid JSON"),
    ('["a list"]', "expected an object"),
    ('{"choices": ["a", "b"], "answer": 0}', "missing field 'question'"),
    ('{"question": "q", "choices": "ab", "answer": 0}', "'choices' must be a list"),
    ('{"question": "q", "choices": ["a", 2], "answer": 0}',
     "field 'choices[1]' must be a string, not a number"),
    ('{"question": "q\\ud800", "choices": ["a", "b"], "answer": 0}', "lone surrogate"),
    ('{"question": 7, "choices": ["a", "b"], "answer": 0}', "'question' must be a string"),
    ('{"question": "q", "choices": ["a", "b"], "answer": 0, "subject": " "}',
     "'subject' is empty"),
    ('{"question": "q", "choices": ["only"], "answer": 0}', "1 choices"),
    ('{"question": "q", "choices": ["a", "b"], "answer": 2}', "answer 2 is not a choice"),
    ('{"question": "q", "choices": ["a", "b"], "answer": "C"}', 'answer "C" is not'),
    ('{"question": "q", "choices": ["a", "b"], "answer": true}', "answer true is not"),
    ('{"question": "q", "choices": ["a", "b"]}', "missing field 'answer'"),
    ('{"question": "q", "choices": ["a", "b"], "answer": 0, "subject": 3}', "'subject'"),
])
def test_a_bad_jsonl_record_is_located(tmp_path, record, words):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"question": "q", "choices": ["a", "b"], "answer": 0})
    path.write_text(good + "\n" + record + "\n", encoding="utf-8")
    with pytest.raises(ChoiceFileError) as err:
        read_questions(path)
    assert str(err.value).startswith(f"{path}:2: ")
    assert words in str(err.value)


def test_unusable_files_and_folders_are_named(tmp_path):
    cases = {}
    cases["missing"] = tmp_path / "nope.csv"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    cases["empty folder"] = empty
    blank = tmp_path / "blank_test.csv"
    blank.write_text("\n\n")
    cases["blank"] = blank
    latin = tmp_path / "latin_test.csv"
    latin.write_bytes(b"q,a,b,c,d,A\ncaf\xe9,a,b,c,d,A\n")
    cases["latin-1"] = latin
    other = tmp_path / "data.txt"
    other.write_text("q,a,b,c,d,A\n")
    cases["suffix"] = other
    fifo = tmp_path / "pipe_test.csv"
    os.mkfifo(fifo)
    cases["fifo"] = fifo
    messages = {}
    for name, path in cases.items():
        with pytest.raises(ChoiceFileError) as err:
            read_questions(path)
        assert str(err.value).startswith(str(path)), name
        messages[name] = str(err.value)
    assert "no such file" in messages["missing"]
    assert "without .csv or .jsonl" in messages["empty folder"]
    assert "holds no questions" in messages["blank"]
    assert messages["latin-1"].startswith(f"{latin}:2: not UTF-8")
    assert "expected a .csv" in messages["suffix"]
    assert "named pipe" in messages["fifo"]


# --------------------------------------------------------------------------- CLI


def test_cli_json_on_the_shipped_sample_equals_the_scorer(run_cli, tiny, sample_questions):
    proc = run_cli("eval", "mc", SAMPLE, "--model", "tiny", "--shots", "2", "--seed", "3",
                   "--batch-size", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    got = json.loads(proc.stdout)
    scored = score_questions(tiny, sample_questions,
                             pick_shots(sample_questions, 2, seed=3))
    want = summarize(sample_questions, scored)
    assert got["n"] == len(sample_questions) == want["n"]
    assert got["accuracy"] == pytest.approx(want["accuracy"])
    assert set(got["per_subject"]) == {q.subject for q in sample_questions}
    for subject, row in got["per_subject"].items():
        assert row["n"] == want["per_subject"][subject]["n"]
        assert row["accuracy"] == pytest.approx(want["per_subject"][subject]["accuracy"])
        assert isinstance(row["n"], int) and isinstance(row["accuracy"], float)


@pytest.mark.slow
def test_cli_with_a_checkpoint_folder_limit_and_a_table(run_cli, tmp_path,
                                                        sample_questions):
    folder = tmp_path / "planted"
    save_checkpoint_weights(letter_model("C"), folder)
    proc = run_cli("eval", "mc", SAMPLE, "-m", folder, "--limit", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    firsts = [q for s in ("arithmetic", "general_knowledge", "units_of_measure")
              for q in [x for x in sample_questions if x.subject == s][:4]]
    assert got["n"] == 12
    assert got["accuracy"] == sum(q.answer == 2 for q in firsts) / 12
    # Shots from another file (a dev split): the planted model still says C.
    dev = tmp_path / "arithmetic_dev.csv"
    dev.write_text("What is 1 + 1?,2,3,4,5,A\n", encoding="utf-8")
    shot = run_cli("eval", "mc", SAMPLE, "-m", folder, "--shots", "1", "--shots-from",
                   dev, "--json")
    assert shot.returncode == 0, shot.stderr
    assert json.loads(shot.stdout)["accuracy"] == (
        sum(q.answer == 2 for q in sample_questions) / len(sample_questions))
    assert "32 questions have fewer than 1 shots" in shot.stderr
    table = run_cli("eval", "mc", SAMPLE, "-m", folder)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[-1].split()[:2] == ["all", str(len(sample_questions))]


def test_cli_bad_input_is_a_located_message(run_cli, tmp_path):
    bad = tmp_path / "algebra_test.csv"
    bad.write_text("q,a,b,c,d,A\nq,a,b,c,d,Z\n")
    proc = run_cli("eval", "mc", bad, "--model", "tiny")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"tui-ft: error: {bad}:2: answer 'Z' is not one of "
                                   f"A, B, C, D")
    proc = run_cli("eval", "mc", SAMPLE, "--model", "tiny", "--shots", "-1")
    assert proc.returncode == 2
    assert "--shots must be 0 or more" in proc.stderr
    proc = run_cli("eval", "mc", SAMPLE, "--model", "no-such-model")
    assert proc.returncode == 1 and "unknown model 'no-such-model'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_cli_scores_a_trained_run_by_its_name(run_cli, tmp_path, sample_questions):
    from helpers import word_task_config

    from tui_ft.config import TrainConfig
    from tui_ft.runs.jobs import prepare_run
    from tui_ft.runs.run_source import run_checkpoint
    from tui_ft.runs.worker import run_in_process

    config = TrainConfig.from_dict(word_task_config(tmp_path, "mc-run"))
    run, _ = prepare_run(config)
    assert run_in_process(run) == "finished"
    proc = run_cli("eval", "mc", SAMPLE, "--model", str(run.path), "--json")
    assert proc.returncode == 0, proc.stderr
    model, _ = load_model(str(run.path), runs=run_checkpoint)
    want = summarize(sample_questions, score_questions(model, sample_questions))
    assert json.loads(proc.stdout)["accuracy"] == pytest.approx(want["accuracy"])


# --------------------------------------------------------------------------- lm-eval


def lm_eval_python() -> str | None:
    """A Python that has lm-evaluation-harness: $LM_EVAL_PYTHON, or this one if it has
    it (it is no dependency of ours, test extras included)."""
    import importlib.util
    import sys

    if os.environ.get("LM_EVAL_PYTHON"):
        return os.environ["LM_EVAL_PYTHON"]
    return sys.executable if importlib.util.find_spec("lm_eval") else None


@pytest.mark.slow
def test_lm_eval_scores_an_exported_model_as_eval_mc_does(run_cli, tmp_path, repo_root,
                                                          sample_questions):
    import subprocess

    python = lm_eval_python()
    if python is None:
        pytest.skip("lm-evaluation-harness is not installed (or set LM_EVAL_PYTHON)")
    model_dir = tmp_path / "model"
    exported = run_cli("export", "tiny", model_dir)
    assert exported.returncode == 0, exported.stderr
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(
        json.dumps({"question": q.question, "choices": list(q.choices),
                    "answer": q.answer, "subject": q.subject}) + "\n"
        for q in sample_questions), encoding="utf-8")
    # The task file the README points to, aimed at this file.
    task = (repo_root / "docs" / "lm_eval" / "tuift_mc.yaml").read_text(encoding="utf-8")
    assert "    test: questions.jsonl\n" in task
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "tuift_mc.yaml").write_text(
        task.replace("test: questions.jsonl", f"test: {questions}"), encoding="utf-8")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_DATASETS_CACHE=str(tmp_path / "hf-datasets"))
    proc = subprocess.run(
        [python, "-m", "lm_eval", "--model", "hf", "--model_args",
         f"pretrained={model_dir},dtype=float32", "--include_path", tmp_path / "tasks",
         "--tasks", "tuift_mc", "--device", "cpu", "--batch_size", "8",
         "--output_path", tmp_path / "out", "--log_samples"],
        capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [samples] = (tmp_path / "out").rglob("samples_tuift_mc*.jsonl")
    [results] = (tmp_path / "out").rglob("results_*.json")
    theirs = {}
    for line in samples.read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        theirs[doc["doc_id"]] = [float(r[0][0]) for r in doc["resps"]]
    model, _ = load_model(model_dir)
    ours = score_questions(model, sample_questions)
    assert len(theirs) == len(ours)
    for i, s in enumerate(ours):
        assert s.logprobs == pytest.approx(theirs[i], abs=1e-4), i
    cli = run_cli("eval", "mc", questions, "-m", model_dir, "--json")
    assert cli.returncode == 0, cli.stderr
    acc = json.loads(results.read_text())["results"]["tuift_mc"]["acc,none"]
    assert json.loads(cli.stdout)["accuracy"] == pytest.approx(acc, abs=1e-9)
