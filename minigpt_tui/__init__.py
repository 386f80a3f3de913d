"""minigpt-tui's terminal app and command line; the engine it drives lives in `core`."""
