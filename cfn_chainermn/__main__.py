"""`python -m cfn_chainermn` is the same as the `cfn-chainermn` command."""

from cfn_chainermn.cli import main

if __name__ == "__main__":
    main()
