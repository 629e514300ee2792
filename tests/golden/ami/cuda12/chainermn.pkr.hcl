# cfn-chainermn AMI, profile "cuda12": CUDA 12.x + CuPy 13.6.0 + Chainer 7.8.1 (ChainerMN inside) on the Deep Learning Base AMI (Ubuntu 22.04, Python 3.10, its EFA OpenMPI and NCCL)
# Rendered by `cfn-chainermn ami render`; build it with `cfn-chainermn ami build`.
# Written for Packer's HCL2 as in Debian's packer 1.6.6: the amazon-ebs builder is built in, so
# there is no `packer { required_plugins {...} }` block and no `packer init`.

variable "region" {
  type        = string
  description = "Region the build instance runs in and the AMI is registered in."
}

variable "instance_type" {
  type    = string
  default = "g5.xlarge"
}

variable "ami_regions" {
  type        = list(string)
  default     = []
  description = "Regions the finished AMI is copied to."
}

variable "ami_public" {
  type        = bool
  default     = false
  description = "true makes the AMI (and its copies) public, and so unencrypted: AWS cannot make an encrypted AMI public."
}

variable "ssh_cidr" {
  type        = string
  description = "Address range Packer's temporary security group lets SSH in from: the machine running Packer, e.g. 203.0.113.7/32. No default: never the whole internet unless asked for."
}

variable "ami_name_prefix" {
  type    = string
  default = "cfn-chainermn-cuda12"
}

variable "volume_size" {
  type    = number
  default = 100
}

variable "agent_wheel" {
  type        = string
  description = "Local path of the cfn-chainermn 0.1.0 wheel to install."
}

variable "agent_wheel_sha256" {
  type = string
}

locals {
  stamp = regex_replace(timestamp(), "[- TZ:]", "")
}

source "amazon-ebs" "chainermn" {
  region        = var.region
  instance_type = var.instance_type
  ssh_username  = "ubuntu"
  # the temporary security group opens SSH to this range only (Packer's default is 0.0.0.0/0)
  temporary_security_group_source_cidrs = [var.ssh_cidr]
  source_ami_filter {
    filters = {
      name                = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
      architecture        = "x86_64"
    }
    owners      = ["amazon"]
    most_recent = true
  }
  ami_name        = "${var.ami_name_prefix}-${local.stamp}"
  ami_description = "cfn-chainermn 0.1.0 CUDA 12.x + CuPy 13.6.0 + Chainer 7.8.1 (ChainerMN inside) on the Deep Learning Base AMI (Ubuntu 22.04, Python 3.10, its EFA OpenMPI and NCCL)"
  ami_regions     = var.ami_regions
  ami_groups      = var.ami_public ? ["all"] : []
  # root volume and AMI snapshots encrypted (the account's EBS key); a public AMI cannot be encrypted
  encrypt_boot = ! var.ami_public
  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = var.volume_size
    volume_type           = "gp3"
    iops                  = 3000
    throughput            = 125
    delete_on_termination = true
  }
  tags = {
    "Name" = "cfn-chainermn-cuda12"
    "cfn-chainermn:ami-profile" = "cuda12"
    "cfn-chainermn:version" = "0.1.0"
    "cfn-chainermn:cuda" = "12"
    "cfn-chainermn:openmpi" = "base-ami"
    "cfn-chainermn:nccl" = "base-ami"
    "cfn-chainermn:python" = "3.10"
    "cfn-chainermn:chainer" = "7.8.1"
    "cfn-chainermn:chainercv" = "0.13.1"
    "cfn-chainermn:chainerrl" = "0.8.0"
    "cfn-chainermn:numpy" = "1.26.4"
    "cfn-chainermn:gym" = "0.22.0"
    "cfn-chainermn:cupy" = "cupy-cuda12x==13.6.0"
    "cfn-chainermn:chainermn" = "in chainer 7.8.1"
  }
  run_tags = {
    "Name" = "cfn-chainermn AMI build (cuda12)"
  }
}

build {
  sources = ["source.amazon-ebs.chainermn"]

  provisioner "shell" {
    inline = ["mkdir -p /var/tmp/cfn-chainermn"]
  }

  # /var/tmp, not /tmp: the upload must survive the reboot below
  provisioner "file" {
    source      = var.agent_wheel
    destination = "/var/tmp/cfn-chainermn/"
  }

  provisioner "shell" {
    execute_command = "{{ .Vars }} sudo -E -H bash '{{ .Path }}'"
    scripts         = ["scripts/10-wait-for-boot.sh", "scripts/20-cuda.sh"]
  }

  provisioner "shell" {
    execute_command  = "{{ .Vars }} sudo -E -H bash '{{ .Path }}'"
    environment_vars = [
      "AGENT_WHEEL=/var/tmp/cfn-chainermn/${basename(var.agent_wheel)}",
      "AGENT_WHEEL_SHA256=${var.agent_wheel_sha256}",
    ]
    scripts = ["scripts/30-openmpi.sh", "scripts/40-python-stack.sh", "scripts/50-agent.sh", "scripts/60-system.sh", "scripts/90-smoke-and-manifest.sh"]
  }

  # Last, always: Packer's temporary key (cloud-init wrote it for ubuntu and root) must
  # not log in to instances of the image. Packer needs no new login after this: it stops the
  # instance over the API, and this command runs in the session it already has.
  provisioner "shell" {
    inline = [
      "sudo sh -c 'set -e; for f in /root/.ssh/authorized_keys ~ubuntu/.ssh/authorized_keys; do if [ -f \"$f\" ]; then shred -u \"$f\"; fi; rm -f \"$f\"; done'",
    ]
  }

  post-processor "manifest" {
    output     = "packer-manifest.json"
    strip_path = true
  }
}
