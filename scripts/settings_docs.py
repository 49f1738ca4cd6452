"""Write `.env.example` and `docs/settings.md` from the settings in `bot/settings.py`.

Run after adding or changing a setting: `python scripts/settings_docs.py`. Tests compare both
files with the code, so a setting is described in exactly one place.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.settings import env_example, settings_doc  # noqa: E402


def main() -> None:
    (ROOT / ".env.example").write_text(env_example())
    (ROOT / "docs" / "settings.md").write_text(settings_doc())


if __name__ == "__main__":
    main()
