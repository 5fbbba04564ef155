"""One runner per algorithm family: each turns a validated config into rounds on a RunDirectory."""
