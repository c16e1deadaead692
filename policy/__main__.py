"""Entry point of the policy pack: `pulumi preview --policy-pack policy`.

PolicyPack() starts serving (and blocks) in its constructor, so it is built only here; the rules
live in carecircle_policies.py, importable by the tests and the environment report.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from carecircle_policies import POLICIES

PolicyPack(name="carecircle", enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)
