"""The app's panels, one widget per module."""

from minigpt_tui.widgets.chat_pane import ChatPane
from minigpt_tui.widgets.help_screen import HelpScreen
from minigpt_tui.widgets.loss_chart import LossChart
from minigpt_tui.widgets.progress import RunProgress
from minigpt_tui.widgets.prompt_input import PromptInput
from minigpt_tui.widgets.samples_log import SamplesLog
from minigpt_tui.widgets.status_bar import StatusBar

__all__ = ["ChatPane", "HelpScreen", "LossChart", "PromptInput", "RunProgress", "SamplesLog", "StatusBar"]
