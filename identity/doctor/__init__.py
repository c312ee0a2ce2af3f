"""The doctor's real-name check (issue 3): verification with liveness before accepting,
continuous re-checks during the call, the registry admin API."""
