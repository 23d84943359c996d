function step = xor_phases(theta, S, t, X, y, cfg, with_forward)
% XOR_PHASES  One training step from each of a batch of B states, every phase's values:
% step.loss (B, 1) and, as flat (B, 4H+1) matrices in the exchange order, step.grads,
% step.slots (each slot's new value), step.update (the step delta) and step.theta (the
% new parameters); step.forward (Z1, A1, Z2, A2) when asked for (with_forward).
%
% theta holds one state per row (xor_gradients), S each slot the same way; t is the
% number of steps each state has taken, a scalar or (B, 1). The optimizer's rule is
% element-wise, so it runs once over the flat matrices.
if nargin > 6 && with_forward
    [step.loss, step.grads, step.forward] = xor_gradients(theta, X, y, cfg.grad);
else
    [step.loss, step.grads] = xor_gradients(theta, X, y, cfg.grad);
end
[step.update, step.slots] = xor_rule(step.grads, S, theta, t + 1, cfg);
step.theta = theta - step.update;
end
