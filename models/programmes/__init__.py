"""Interest-subsidy programmes (贴息): what a programme file says, who is eligible, what a subsidy
costs, and how a budget is allocated.

- `programme.py`: the programme file (pydantic, `extra="forbid"`, YAML or JSON, versioned): periods,
  a budget per county and period, eligibility rules, the subsidy, a ceiling on expected loss.
- `eligibility.py`: the rules over a column table (features, the application and the member
  profile); every read of a protected profile field is counted by rule: targeting, never scoring.
- `cost.py`: the interest of an equal-instalment loan, the subsidy it costs, its expected loss.
- `allocation.py`: the integer program (HiGHS) and the two greedy rules it is compared with.
"""
