-- wrk script: replays pre-signed requests from BENCH_REQUESTS (one per line: METHOD \t PATH \t AUTHORIZATION \t BODY),
-- each once, and prints the run's figures as one JSON line at the end.
local lines = {}
local next_line = 0

local file = io.open(os.getenv("BENCH_REQUESTS"), "r")
for line in file:lines() do
  local method, path, auth, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
  local headers = {}
  if auth ~= "" then headers["Authorization"] = auth end
  if body ~= "" then headers["Content-Type"] = "application/json" else body = nil end
  lines[#lines + 1] = wrk.format(method, path, headers, body)
end
file:close()

request = function()
  next_line = next_line + 1
  if next_line > #lines then
    -- Never send a request twice: a repeat would be stored once and flatter the event figures.
    error("bench: ran out of pre-signed requests; raise the count in bench/run.py")
  end
  return lines[next_line]
end

done = function(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx": %d, "errors": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
