"""CloudFormation stacks: calls, live events, staging, preflight checks, failure diagnosis."""
