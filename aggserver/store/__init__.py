"""Redis: the connection, the price store and its write script, announcements and leases."""
