"""The HTTP side: the app factory, its keys, routes, parameters, answers, budgets and streams."""
