"""``python -m agent_tools``: serve the agent tools on stdio."""

import sys

from agent_tools.server import main

sys.exit(main())
