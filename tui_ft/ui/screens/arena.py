"""The blind A/B comparison screen ('tui-ft compare RUN_A RUN_B --grade'): a prompt and
its two answers side by side as A and B, in the order the comparison drew for that
prompt, with no model names; a, b, t and x give the verdict (fsynced by the engine,
grade/arena.py) and move to the next pair without one. Results are shown as counts
only while pairs are left; which model wrote which answer is shown when every pair
has a verdict, or when asked for (r twice)."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from ...grade.arena import HUMAN, Comparison, Pair
from ...text import visible
from ..widgets.key_legend import KeyLegend

VERDICT_WORDS = {"A": "A better", "B": "B better", "tie": "tie", "both_bad": "both bad"}


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def results_text(results: dict) -> str:
    """The results as the screen shows them; names only when revealed."""
    lines = [f"{results['verdicts']} of {results['pairs']} pairs judged "
             f"({results['remaining']} left): {results['decisive']} decisive, "
             f"{results['ties']} ties, {results['both_bad']} both bad"]
    if results["sides"] is None:
        lines.append("Which model wrote which answer stays hidden until every pair has "
                     "a verdict (r again reveals it now).")
    else:
        for side in results["sides"]:
            interval = ("" if side["ci_low"] is None else
                        f" (95% CI {_pct(side['ci_low'])} to {_pct(side['ci_high'])})")
            lines.append(f"{visible(side['spec'], keep_newlines=False)}: wins "
                         f"{side['wins']}, win rate {_pct(side['win_rate'])}{interval}")
        lines.append("Win rate: share of the decisive verdicts; ties and both bad apart.")
    return "\n".join(lines)


class ArenaScreen(Screen):
    CSS_PATH = "arena.tcss"
    BINDINGS = [
        Binding("a", "verdict('A')", "A better"),
        Binding("b", "verdict('B')", "B better"),
        Binding("t", "verdict('tie')", "Tie"),
        Binding("x", "verdict('both_bad')", "Both bad"),
        Binding("left,p", "move(-1)", "Previous"),
        Binding("right,n", "move(1)", "Next"),
        Binding("r", "results", "Results"),
        Binding("escape", "leave", "Back"),
    ]

    def action_leave(self) -> None:
        """Back to the Runs screen, or out of `tui-ft compare --grade`; every verdict
        is on disk already."""
        if isinstance(self.app, ArenaApp):
            self.app.exit()
        else:
            self.app.pop_screen()

    def __init__(self, comparison: Comparison, **kwargs) -> None:
        super().__init__(**kwargs)
        self.comparison = comparison
        left = [i for i, p in enumerate(comparison.pairs)
                if comparison.verdict(p, HUMAN) is None]
        # It opens where the last session stopped: the first pair without a verdict.
        self.index = left[0] if left else 0
        self.reveal_asked = False
        self.showing_results = not left

    def compose(self) -> ComposeResult:
        yield Static(id="arena-header", markup=False)
        with VerticalScroll(id="arena-prompt"):
            yield Static(id="arena-prompt-text", markup=False)
        with Horizontal(id="arena-answers"):
            with VerticalScroll(id="arena-a"):
                yield Static(id="arena-a-text", markup=False)
            with VerticalScroll(id="arena-b"):
                yield Static(id="arena-b-text", markup=False)
        yield Static(id="arena-results", markup=False)
        yield KeyLegend(id="key-legend")

    def on_mount(self) -> None:
        self.query_one("#arena-prompt").border_title = "prompt"
        self.query_one("#arena-a").border_title = "A"
        self.query_one("#arena-b").border_title = "B"
        self.query_one("#arena-results").border_title = "results"
        self.show()

    @property
    def pair(self) -> Pair | None:
        pairs = self.comparison.pairs
        return pairs[self.index] if pairs else None

    def show(self) -> None:
        comparison = self.comparison
        results = comparison.results(HUMAN, reveal=self.reveal_asked)
        pair = self.pair
        # Not the comparison's name: made from the sides', it would name the models.
        header = "blind comparison"
        if pair is not None:
            said = comparison.verdict(pair, HUMAN)
            header += (f"  pair {self.index + 1} of {len(comparison.pairs)}  "
                       f"{results['verdicts']} judged"
                       + (f"  your verdict: {VERDICT_WORDS[said]}" if said else ""))
        self.query_one("#arena-header", Static).update(Text(visible(header,
                                                                   keep_newlines=False)))
        if pair is None:
            prompt = "The two sides answer no prompt in common."
            a = b = ""
        else:
            shown = pair.shown()
            prompt = shown["instruction"]
            if shown["input"].strip():
                prompt += "\n\nInput:\n" + shown["input"]
            prompt += "\n\nExpected output:\n" + shown["expected"]
            a, b = shown["answer_a"], shown["answer_b"]
        # Untrusted text: control characters shown as symbols, never markup.
        self.query_one("#arena-prompt-text", Static).update(Text(visible(prompt)))
        self.query_one("#arena-a-text", Static).update(Text(visible(a)))
        self.query_one("#arena-b-text", Static).update(Text(visible(b)))
        panel = self.query_one("#arena-results", Static)
        panel.update(Text(results_text(results)))
        panel.set_class(self.showing_results or results["complete"], "shown")

    def action_verdict(self, verdict: str) -> None:
        pair = self.pair
        if pair is None:
            return
        try:
            self.comparison.record(pair, verdict, HUMAN)
        except Exception as exc:  # a full disk, a folder gone: said, nothing shown as saved
            self.notify(visible(str(exc)), severity="error", markup=False)
            return
        left = [i for i, p in enumerate(self.comparison.pairs)
                if self.comparison.verdict(p, HUMAN) is None]
        if left:
            # The next pair without a verdict, wrapping round to earlier ones.
            self.index = next((i for i in left if i > self.index), left[0])
        else:
            self.showing_results = True
        self.show()

    def action_move(self, step: int) -> None:
        if self.comparison.pairs:
            self.index = (self.index + step) % len(self.comparison.pairs)
            self.show()

    def action_results(self) -> None:
        # The first r shows the counts; a second r while they show names the models.
        if self.showing_results:
            self.reveal_asked = True
        self.showing_results = True
        self.show()


class ArenaApp(App):
    """The comparison alone (`tui-ft compare ... --grade`); in the main app the screen
    opens over the Runs screen (c) instead."""
    TITLE = "tui-ft compare"
    BINDINGS = [Binding("q", "quit", "Quit")]

    def __init__(self, path: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.path = Path(path)

    def on_mount(self) -> None:
        self.push_screen(ArenaScreen(Comparison(self.path)))


def run_arena(path: Path, *, mouse: bool = True) -> int:
    from ...console import terminal_problem
    from ...errors import TuiFtError

    stream = terminal_problem()
    if stream is not None:
        raise TuiFtError(f"the comparison screen needs a terminal, and its {stream} is not "
                         "one; run it in a terminal, or have the judge fill the comparison "
                         "(--judge)")
    ArenaApp(path).run(mouse=mouse)
    return 0
