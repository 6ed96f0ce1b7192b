"""``python -m bedrock_ft.cli``: the same as the ``bedrock-ft`` command."""

from bedrock_ft.cli import main

main()
