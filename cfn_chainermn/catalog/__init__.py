"""What EC2 offers: GPU instance types, their GPUs, vCPU quotas and prices."""
