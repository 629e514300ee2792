"""The local cluster: sshd nodes on 127.0.0.x running the real node agent."""
