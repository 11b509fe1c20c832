"""``python -m agent_tools``: serve the agent tools on stdio (the fast front; the SDK server is its child)."""

import sys

from agent_tools.front import main

sys.exit(main())
