-- wrk script: cycle bearer tokens (one per line in the file named after "--") across requests,
-- and print the summary as one JSON line prefixed "BENCH_JSON " for benchmarks/loadgen.py.
-- Usage: wrk -t2 -c16 -d5s -s benchmarks/wrk_tokens.lua http://127.0.0.1:PORT/api/me -- FILE

local threads_started = 0
local prepared = {}
local index = 0

function setup(thread)
  thread:set("thread_id", threads_started)
  threads_started = threads_started + 1
end

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      prepared[#prepared + 1] = wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. line })
    end
  end
  -- Threads start at different users, so the tokens in flight differ.
  index = ((thread_id or 0) * 17) % #prepared
end

function request()
  index = index % #prepared + 1
  return prepared[index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_s": %.6f, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "mean_us": %.1f, "max_us": %d, "errors": {"connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d}, "non_2xx": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, e.connect, e.read, e.write, e.timeout,
    e.status))
end
