"""cfn-chainermn: ChainerMN GPU clusters on AWS with CloudFormation, and jobs on them."""

__version__ = "0.1.0"
