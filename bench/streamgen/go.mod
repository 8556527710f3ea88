module switchboard.dev/bench/streamgen

go 1.26
