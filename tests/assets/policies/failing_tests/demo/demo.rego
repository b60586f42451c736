package demo

import rego.v1

limit := data.demo.config.limit

too_big(x) if x > limit

ratio(x) := 100 / x
