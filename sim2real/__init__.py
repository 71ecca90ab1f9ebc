"""sim2real: grasping in simulation, transfer to a real camera, export and deployment.

Layers: ``envs`` (simulated grasping worlds), ``policies`` (encoders and policy learning),
``sim2real`` (real data, transfer, export, runtime and ROS; filled in by later milestones).
"""

__version__ = "0.1.0"
