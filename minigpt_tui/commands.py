"""The app's own entries in the command palette (ctrl+p)."""

import functools

from textual.command import DiscoveryHit, Hit, Hits, Provider


class TrainingCommands(Provider):
    def _commands(self) -> list[tuple[str, str, str]]:
        """(name, app action, help) for each command that applies; the pause entry names what it will do now."""
        pause = "Resume training" if self.app.pause_requested else "Pause training"
        quit = "Stop training, save checkpoint, metrics and plot, and exit" if self.app.training else "Exit"
        commands = [
            ("Save loss plot", "save_plot", "Write the loss plot PNG to the output directory now"),
            ("Save checkpoint now", "save_checkpoint", "Write last.pt at the next step boundary"),
            (pause, "toggle_pause", "Takes effect at the next step boundary"),
            ("Toggle log scale", "toggle_log_scale", "Switch the chart's y axis between linear and log"),
            ("Chart: loss", "chart_view('loss')", "Train and val loss, the best val loss marked"),
            ("Chart: learning rate", "chart_view('lr')", "The learning rate of each evaluation's step"),
            ("Chart: gradient norm", "chart_view('grad_norm')", "The global gradient norm, before clipping"),
            ("Chart: tokens/s", "chart_view('tokens_per_s')", "Training speed between evaluations"),
            ("Chart: toggle smoothed train loss", "toggle_smoothing", "An EMA of the train loss, the raw line dimmed"),
            ("Stop training", "stop_training", "Stop at the next step and save; the app stays open"),
            ("Chat: type a prompt", "focus_prompt", "The model continues it with its latest weights"),
            ("Chat: sampling settings", "sampling", "Temperature, top-k, top-p and max new tokens of the replies"),
            ("Chat: copy the last reply", "copy_reply", "To the clipboard (through the terminal, also over SSH)"),
            ("Chat: tint tokens by probability", "toggle_tint", "Colour each reply token by the probability given it"),
            ("Chat: save the conversation", "save_conversation", "To chat-DATE-TIME.txt in the output directory"),
            ("Inspect the model", "inspect", "Tokens, next-token probabilities, attention and logit lens of a text"),
            ("Inspect: follow the latest weights, or hold these", "inspect_follow", "At each evaluation"),
            ("Layers: how each layer learns", "layers", "Updates, gradients, activations, attention"),
            ("Quit", "quit", quit),
        ]
        return [command for command in commands if self.app.check_action(command[1], ()) is not False]

    def _run(self, action: str):
        return functools.partial(self.app.run_palette_command, action)

    async def discover(self) -> Hits:
        for name, action, help in self._commands():
            yield DiscoveryHit(name, self._run(action), help=help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, action, help in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), self._run(action), help=help)
