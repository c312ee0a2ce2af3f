"""The base layer every feature stands on: configuration, roles and tokens, the store and its
event chain, live state, the consultation lifecycle, the eligibility policy, ops alerts and
metrics. It imports none of the feature packages (signaling/, identity/, recorder/) nor server/,
which is the top: the app, its HTTP routes, the CLI."""
