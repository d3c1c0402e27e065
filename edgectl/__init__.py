"""edgectl: operate the fleet through cloudhub's admin API."""
