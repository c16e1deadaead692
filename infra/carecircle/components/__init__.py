"""One Pulumi ComponentResource per concern, each taking one typed args object."""
