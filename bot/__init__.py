"""The chat bot: a platform-neutral core (commands, corpora, models) and thin fronts over it.

Fronts import the contract from `bot.core`; importing this package itself loads nothing heavy.
"""
