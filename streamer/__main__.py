"""`python -m streamer`: the `streamer` command, for when the script is not on the PATH."""

from streamer.cli import main

main(prog_name="streamer")
