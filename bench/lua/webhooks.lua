-- wrk script: POST pre-signed webhooks, each once, and count what came back.
--
--   wrk -tT -cN -dS -s webhooks.lua URL -- REQUESTS_FILE RATE T
--
-- REQUESTS_FILE holds the requests (see bench/wrk.py: a header line "id<TAB>timestamp<TAB>
-- signature<TAB>length" then the body); thread i of n takes requests i, i+n, i+2n, ...
-- RATE (requests/s for all threads; 0: as fast as the connections go) paces sends on a fixed schedule (an open
-- model): every send takes the next slot of the thread's schedule; a send that starts more
-- than 2 ms after its slot is counted as late (the run then was not a true open model).
-- done() prints one JSON line "WRK {...}" with the counts and latency percentiles (µs).
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local now_ts = ffi.new("bench_timespec")
local function now_ms()
    ffi.C.clock_gettime(1, now_ts) -- CLOCK_MONOTONIC
    return tonumber(now_ts.tv_sec) * 1000 + tonumber(now_ts.tv_nsec) / 1e6
end

local threads = {}
local counter = 0

function setup(thread)
    thread:set("index", counter)
    counter = counter + 1
    table.insert(threads, thread)
end

local requests = {}
local next_request = 1
local interval_ms = nil
local next_slot = nil
-- Globals, not locals: done() reads them from each thread with thread:get().
late = 0
exhausted = 0
status_202, status_other = 0, 0
others = {}

function init(args)
    local path, rate, stride = args[1], tonumber(args[2]), tonumber(args[3])
    local index = tonumber(wrk.thread:get("index"))
    local file = assert(io.open(path, "rb"))
    local data = file:read("*a")
    file:close()
    local position, number = 1, 0
    while position <= #data do
        local line_end = data:find("\n", position, true)
        if not line_end then break end
        local id, stamp, signature, length =
            data:sub(position, line_end - 1):match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t(%d+)$")
        length = tonumber(length)
        local body = data:sub(line_end + 1, line_end + length)
        position = line_end + length + 2
        if number % stride == index then
            requests[#requests + 1] = wrk.format("POST", nil, {
                ["webhook-id"] = id,
                ["webhook-timestamp"] = stamp,
                ["webhook-signature"] = signature,
                ["Content-Type"] = "application/json",
            }, body)
        end
        number = number + 1
    end
    data = nil
    if rate > 0 then
        interval_ms = 1000 / (rate / stride)
    end
end

function delay()
    if not interval_ms then return 0 end
    local now = now_ms()
    if not next_slot then next_slot = now end
    local slot = next_slot
    next_slot = next_slot + interval_ms
    if slot < now - 2 then late = late + 1 end
    return math.max(0, math.floor(slot - now + 0.5))
end

function request()
    local prepared = requests[next_request]
    if prepared == nil then
        -- Out of unique requests: stop this thread rather than send a duplicate.
        exhausted = 1
        wrk.thread:stop()
        return requests[#requests]
    end
    next_request = next_request + 1
    return prepared
end

function response(status, headers, body)
    if status == 202 then
        status_202 = status_202 + 1
    else
        status_other = status_other + 1
        others[status] = (others[status] or 0) + 1
    end
end

function done(summary, latency, requests_)
    local ok, other, late_total, out = 0, 0, 0, 0
    local statuses = {}
    for _, thread in ipairs(threads) do
        ok = ok + tonumber(thread:get("status_202"))
        other = other + tonumber(thread:get("status_other"))
        late_total = late_total + tonumber(thread:get("late"))
        out = out + tonumber(thread:get("exhausted"))
        local seen = thread:get("others")
        for status, n in pairs(seen) do
            statuses[tostring(status)] = (statuses[tostring(status)] or 0) + n
        end
    end
    local parts = {}
    for status, n in pairs(statuses) do parts[#parts + 1] = string.format('"%s":%d', status, n) end
    io.write(string.format(
        'WRK {"requests":%d,"duration_us":%d,"accepted":%d,"other":%d,"other_statuses":{%s},' ..
        '"late":%d,"exhausted":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
        '"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d}\n',
        summary.requests, summary.duration, ok, other, table.concat(parts, ","), late_total, out,
        summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency:percentile(99.9), latency.max))
end
