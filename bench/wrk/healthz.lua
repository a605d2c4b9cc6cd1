-- GET the URL wrk is given (/healthz): wrk's static request, its fastest path, with the
-- common done() so bench/senders.py reads the same JSON line as from the other scripts.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local common = require("common")

setup = common.setup
done = common.done
