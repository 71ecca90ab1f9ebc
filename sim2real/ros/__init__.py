"""The robot side of a deployment.

- ``core``: ``DeployConfig`` (topics, rate, frame, safety; YAML + flags) and ``PolicyLoop``, the control
  loop every transport shares (when the policy runs, what is sent, when it is zero);
- ``safety``: velocity and workspace clamps, stale-image watchdog, e-stop, episode time, image checks;
- ``messages``: ROS message fields <-> numpy (raw and compressed images, base64, quaternions, stamps);
- ``node``: the ROS 2 node (rclpy); ``bridge``: the rosbridge client (roslibpy);
- ``sim_robot``: the grasping simulation as a ROS 2 robot; ``rehearsal``: both as two processes.
"""
