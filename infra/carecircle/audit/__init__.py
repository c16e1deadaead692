"""Auditor tooling over offline evaluations: reports, diffs, the config reference, policy checks and
the blast radius of routine changes. Never imported by the program that `pulumi up` runs."""
