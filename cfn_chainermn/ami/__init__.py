"""The AMI recipe: version profiles, rendering, Packer, the test wheelhouse."""
