-- GET /prices/{asset} for an asset drawn uniformly from symbols.csv (path: first script argument).
local symbols = {}

init = function(args)
  local path = args[1] or "symbols.csv"
  for line in io.lines(path) do
    if line ~= "symbol" and line ~= "" then symbols[#symbols + 1] = line end
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

request = function()
  return wrk.format("GET", "/prices/" .. symbols[math.random(#symbols)])
end

dofile(debug.getinfo(1, "S").source:sub(2):gsub("uniform%.lua$", "report.lua"))
