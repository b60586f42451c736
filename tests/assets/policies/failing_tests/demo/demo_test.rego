# Four tests, one of each outcome (tests/test_policy_test.py asserts them).
package demo_test

import rego.v1

import data.demo

test_passes if demo.too_big(11)

test_is_false if {
	demo.too_big(3) == true
}

test_is_not_a_boolean := 42

test_raises if demo.ratio(0) == 1
