"""Edge mode: dial the gateway, keep tunnels up, connect streams to local targets."""
