"""The Slack front: a slack-bolt app over Socket Mode on the platform-neutral core (`bot.core`).

`run(settings)` connects with SLACK_BOT_TOKEN and SLACK_APP_TOKEN and serves until SIGTERM or
Ctrl-C; `SlackFront(core, settings, client)` builds the app without connecting, for tests.
docs/slack.md sets up the Slack app.
"""

from bot.slack_front.app import SlackFront
from bot.slack_front.run import run

__all__ = ["SlackFront", "run"]
