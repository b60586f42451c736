# Unit tests of the shared helpers (package mlgate.lib), against the fixed
# thresholds of the test fixtures.
package mlgate.lib_test

import rego.v1

import data.mlgate.lib
import data.mlgate.testdata as td

now := td.evaluated_at_ns

test_age_text_without_a_time if {
	lib.age_text(null) == "has no time" with input as td.good_input
}

test_age_text_without_an_evaluation_time if {
	inp := td.without("/evaluated_at_ns")
	lib.age_text(now) == "cannot be aged: the input has no evaluated_at_ns" with input as inp
}

# (arguments are computed first: regorus 0.13 leaves a call undefined when an
# argument is arithmetic over other rules inside a `with` expression)
test_age_text_in_the_future if {
	t := now + 2 * td.day_ns
	lib.age_text(t) == "is in the future (2 days after evaluation)" with input as td.good_input
}

test_age_text_in_the_past if {
	t := now - 10 * td.day_ns
	lib.age_text(t) == "is 10 days old" with input as td.good_input
}

test_fresh_only_within_max_age if {
	recent := now - 10 * td.day_ns
	old := now - 400 * td.day_ns
	future := now + 1
	lib.fresh(recent) with input as td.good_input with data.mlgate.environments as td.environments
	not lib.fresh(old) with input as td.good_input with data.mlgate.environments as td.environments
	not lib.fresh(future) with input as td.good_input with data.mlgate.environments as td.environments
	not lib.fresh("yesterday") with input as td.good_input with data.mlgate.environments as td.environments
}

test_max_age_text if {
	lib.max_age_text == "365 days" with input as td.good_input with data.mlgate.environments as td.environments
	lib.max_age_text == "<missing>" with input as td.good_input with data.mlgate.environments as {}
}

test_thresholds_of_an_unknown_environment_are_empty if {
	lib.thresholds("bias") == {} with input as td.with_value("/environment", "qa") with data.mlgate.environments as td.environments
}

test_display_helpers if {
	lib.s({"a": "x"}, "a") == "x"
	lib.s({"a": null}, "a") == "<missing>"
	lib.s({"a": 3}, "a") == "3"
	lib.num(0.12345) == "0.123"
	lib.num("x") == "<missing>"
	lib.p({"p": 0.00002}, "p") == "2.00e-05"
	lib.p({"p": 5.44034e-33}, "p") == "5.44e-33"
	lib.p({"p": 0.000999}, "p") == "9.99e-04"
	lib.p({"p": 0.0009999}, "p") == "1.00e-03"
	lib.p({"p": 9.999e-7}, "p") == "1.00e-06"
	lib.p({"p": 1.2345e-10}, "p") == "1.23e-10"
	lib.p({"p": 0}, "p") == "0"
	lib.p({"p": 1e-305}, "p") == "0"
	lib.p({"p": 0.04567}, "p") == "0.0457"
	lib.p({}, "p") == "<missing>"
	lib.short({"d": "sha256:9372c470eeadd5ec"}, "d") == "9372c470eead"
	lib.short({"d": ""}, "d") == "<missing>"
	lib.join([]) == "none"
	lib.join(["a", 1]) == "a, 1"
}

test_predicates_want_the_literal_value if {
	lib.is_true({"k": true}, "k")
	not lib.is_true({"k": "true"}, "k")
	not lib.is_true({}, "k")
	lib.is_false({"k": false}, "k")
	not lib.is_false({}, "k")
	lib.has_text({"k": " x "}, "k")
	not lib.has_text({"k": "  "}, "k")
	lib.list_of({"k": [1]}, "k") == [1]
	lib.list_of({"k": "x"}, "k") == []
}

test_patch_fixture if {
	td.patch({"a": 1}, [{"op": "replace", "path": "/a", "value": 2}]) == {"a": 2}
}

# Every helper reads a non-object as "missing" (object.get on a non-object is an
# evaluation error in regorus): a malformed block denies through the rules, with
# MLG-CFG-006, never an engine error.
test_helpers_read_non_objects_as_missing if {
	every obj in [null, "text", 1, true, [], [{"k": 1}]] {
		not lib.is_true(obj, "k")
		not lib.is_false(obj, "k")
		not lib.has_text(obj, "k")
		lib.list_of(obj, "k") == []
		lib.s(obj, "k") == "<missing>"
		lib.n(obj, "k") == "<missing>"
		lib.p(obj, "k") == "<missing>"
		lib.short(obj, "k") == "<missing>"
	}
}
