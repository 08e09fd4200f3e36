-- wrk script for bench/run.py. Replays the requests in BENCH_REQUESTS (one a line:
-- METHOD \t PATH \t AUTHORIZATION \t BODY), each at most once, counts the responses by status, and prints the
-- round's figures as one JSON line at the end. Run it with -t1: see setup below.

local threads = {}

-- wrk only sets its Host header in wrk.init, after this file has run, so wrk.format here would leave it out
-- (and Express answers 400 to a request without one). The request text is therefore built by hand.
local function host_header()
  if wrk.port then return wrk.host .. ":" .. wrk.port end
  return wrk.host
end

local function build(method, path, auth, body)
  local head = { method .. " " .. path .. " HTTP/1.1", "Host: " .. host_header() }
  if auth ~= "" then head[#head + 1] = "Authorization: " .. auth end
  if body ~= "" then head[#head + 1] = "Content-Type: application/json" end
  if body ~= "" or method == "POST" then head[#head + 1] = "Content-Length: " .. #body end
  return table.concat(head, "\r\n") .. "\r\n\r\n" .. body
end

-- setup runs in wrk's main Lua state, once per thread, before that thread's init.
function setup(thread)
  threads[#threads + 1] = thread
  if #threads > 1 then
    -- Every thread has its own Lua state and would replay the same lines: a repeated event is stored once.
    error("bench/requests.lua: run wrk with -t1, or threads would send the same requests")
  end
end

-- init, request and response run in the thread's own Lua state.
local lines = {}
local next_line = 0
statuses = {}

function init(args)
  local file = assert(io.open(os.getenv("BENCH_REQUESTS"), "r"))
  for line in file:lines() do
    local method, path, auth, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    lines[#lines + 1] = build(method, path, auth, body)
  end
  file:close()
end

function request()
  next_line = next_line + 1
  if next_line > #lines then
    -- Never send a request twice: a repeat would be stored once and flatter the event figures.
    -- wrk also takes a new request for every reconnection, so a server refusing connections ends here too.
    error("bench: ran out of requests: the server answered faster than MAX_RATE in bench/run.py allows, " ..
      "or its connections kept failing (see its log)")
  end
  return lines[next_line]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      counts[#counts + 1] = string.format('"%d": %d', status, count)
    end
  end
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "statuses": {%s}, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d}, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, table.concat(counts, ", "),
    errors.connect, errors.read, errors.write, errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
