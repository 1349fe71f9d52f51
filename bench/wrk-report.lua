-- wrk script for bench/compare.sh: counts response statuses exactly and prints one
-- machine-readable line at the end. WRK_EXPECT (env) says what a good answer is:
-- "2xx" (default, proxy and direct runs) or an exact code such as "307" (redirect runs).
-- wrk itself only counts statuses >= 400 as errors, so it cannot tell a 200 from a 301.
-- WRK_COUNT=wrk drops the per-response hook (it costs wrk CPU: ~15% fewer req/s at 100k req/s)
-- and falls back to wrk's own count: then only statuses >= 400 count as bad.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  expect = os.getenv("WRK_EXPECT") or "2xx"
  expect_code = tonumber(expect)
  good, bad, first_bad = 0, 0, 0
end

local exact = (os.getenv("WRK_COUNT") or "exact") ~= "wrk"

if exact then
  function response(status, headers, body)
    local ok
    if expect_code then ok = (status == expect_code) else ok = (status >= 200 and status < 300) end
    if ok then
      good = good + 1
    else
      bad = bad + 1
      if first_bad == 0 then first_bad = status end
    end
  end
end

function done(summary, latency, requests)
  local good_sum, bad_sum, first = 0, 0, 0
  for _, t in ipairs(threads) do
    good_sum = good_sum + (t:get("good") or 0)
    bad_sum = bad_sum + (t:get("bad") or 0)
    local fb = t:get("first_bad") or 0
    if first == 0 and fb ~= 0 then first = fb end
  end
  local e = summary.errors
  if not exact then
    good_sum, bad_sum = summary.requests - e.status, e.status
  end
  io.write(string.format(
    "WRKRESULT requests=%d duration_us=%d good=%d bad=%d first_bad=%d" ..
    " p50_us=%d p90_us=%d p99_us=%d max_us=%d" ..
    " err_connect=%d err_read=%d err_write=%d err_timeout=%d err_status=%d\n",
    summary.requests, summary.duration, good_sum, bad_sum, first,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout, e.status))
end
