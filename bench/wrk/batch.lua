-- GET /prices?assets=... with a batch of N assets drawn uniformly from symbols.csv
-- (script arguments: the path of symbols.csv, then N).
local symbols = {}
local size = 1

init = function(args)
  for line in io.lines(args[1] or "symbols.csv") do
    if line ~= "symbol" and line ~= "" then symbols[#symbols + 1] = line end
  end
  size = tonumber(args[2] or "1")
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

request = function()
  local batch = {}
  for i = 1, size do batch[i] = symbols[math.random(#symbols)] end
  return wrk.format("GET", "/prices?assets=" .. table.concat(batch, ","))
end

dofile(debug.getinfo(1, "S").source:sub(2):gsub("batch%.lua$", "report.lua"))
