"""Judges of sampled responses: the verifier, LM judges (Meta Ranking, pointwise), the reward-model judge.

One module per concept: `base` (the `Judge` protocol and applying one to records), `verifier`, `lm`
(pointwise), `meta_ranking`, `reward_judge`, `cascade`, `calibration`, `reference_bank`, `report`
(comparing judges), and `build`, whose `build_judge` is the one place a judge is made from the config.
The round's judge step (`tasks/judge.py`) and `selftrain judge-eval` both use it.
"""
