"""nodestatus: tells the cloud what this node is (capacity, OS, addresses) on every connect."""
