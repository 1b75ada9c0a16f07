"""One decoding step of generation: the last position's logits, and the step with
fixed shapes that a CUDA graph can capture and replay (generate's `static` and
`cuda_graphs` paths)."""

from __future__ import annotations


def logits_last(model, ids, position_ids, attn_mask, cache):
    # Only the last position's logits are needed: projecting every prompt position
    # onto the vocabulary would cost B x T x 50257 floats for nothing.
    hidden = model.hidden_states(ids, position_ids, attn_mask, cache)
    return model.lm_head(hidden[:, -1]).float()


class StaticStep:
    """One decoding step with fixed shapes: the inputs live in buffers of fixed
    address, the token is written into the cache at a position held in a tensor
    (`KVCache.write_at`), and attention covers the whole cache under a mask that
    grows one position a step. With `graph`, the step is captured as a CUDA graph at
    its first call (after two warm-up runs on a side stream, as torch's docs
    prescribe) and replayed after that; the logits it returns live in the graph's
    output buffer, overwritten by the next step."""

    def __init__(self, model, cache, key_real, prompt_len: int, *, graph: bool) -> None:
        import torch

        B, L = key_real.shape
        device = key_real.device
        self.model, self.cache, self.use_graph = model, cache, graph
        self.tokens = torch.zeros(B, 1, dtype=torch.long, device=device)
        self.positions = torch.zeros(B, 1, dtype=torch.long, device=device)
        # Real prompt keys; the positions of new tokens open as they are written.
        self.mask = key_real.clone()
        self.mask[:, prompt_len:] = False
        self.mask = self.mask[:, None, None, :]
        cache.write_at = torch.zeros(1, dtype=torch.long, device=device)
        self.graph = None
        self.out = None

    def _run(self):
        return logits_last(self.model, self.tokens, self.positions, self.mask, self.cache)

    def __call__(self, tokens, positions, filled: int):
        import torch

        self.tokens.copy_(tokens.view(-1, 1))
        self.positions.copy_(positions.view(-1, 1))
        self.mask[..., filled] = True
        self.cache.write_at.fill_(filled)
        if not self.use_graph:
            return self._run()
        if self.graph is None:
            # Warm-up runs write the same keys and values at the same position as the
            # replay will, so they change nothing.
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._run()
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.out = self._run()
        self.graph.replay()
        return self.out
