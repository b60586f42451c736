# Deliberately broken policies: each file breaks one lint check at a known line
# (tests/test_policy_lint.py asserts the exact findings).
package mlgate.lib

import rego.v1

env := data.mlgate.environments[input.environment]

cfg(kind) := object.get(env, kind, {})

get(obj, key) := object.get(obj, key, null)
