"""client-go's counterpart: how components talk to the API server (filled in with the controllers)."""
