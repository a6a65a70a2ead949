module kstreams.bench/go

go 1.22
