"""The call simulator: plays whole signed Vonage calls against a running server (`flask simulate`)."""
