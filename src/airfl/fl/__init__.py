"""fl: learning. Algorithms, aggregators, the over-the-air round, experiments and the CLI.

Algorithms see only an `Aggregator`; `ota.OverTheAirRound` is the one place radios meet the modem.
"""
