"""The robot side: safety shared by every transport (``safety``); the ROS 2 node and the rosbridge
client come with the rest of the deployment milestone."""
