"""Infrastructure: CloudFormation for the stateful resources and the local stack (dev only, never shipped)."""
