function [loss, g, forward] = xor_gradients(theta, net)
% XOR_GRADIENTS  The logged MSE of each of a batch of B states and the exact gradient
% of the convention's loss ('mse', or 'half-sse': 0.5*sum((A2 - y).^2), twice the MSE's
% gradient for 4 samples) with respect to the parameters, by hand backprop.
%
% theta is (B, 4H+1), one state per row in the exchange order; g comes back the same
% way, loss as (B, 1). net is xor_net's: the hidden layer's matrices are (B, nH), sample
% s's unit j at column (s-1)H + j, so one call serves one training state (B = 1) and
% 20000 recorded ones alike. forward (Z1, A1 (B, nH), Z2, A2 (B, n)) when asked for.
W2 = theta(:, net.W2) * net.tile;                        % W2(j) beside every sample's unit j
Z1 = theta(:, net.W1) * net.spread + theta(:, net.b1) * net.tile;
A1 = 1 ./ (1 + exp(-Z1));             dA1_dZ1 = A1 .* (1 - A1);
Z2 = (A1 .* W2) * net.group + theta(:, end);             % (B, n)
A2 = 1 ./ (1 + exp(-Z2));             dA2_dZ2 = A2 .* (1 - A2);
err = A2 - net.y;
loss = sum(err .* err, 2) / net.n;

dZ2 = net.out_scale * err .* dA2_dZ2;
dZ2_units = dZ2 * net.group_t;        % sample s's dZ2 once per hidden unit
dZ1 = dZ2_units .* W2 .* dA1_dZ1;     % Z2 = A1 W2 + b2: dZ2/dA1 = W2
% Z1 = X W1 + b1: dZ1/dW1(i, j) = X(:, i); dZ2/dW2(j) = A1(:, j)
g = [dZ1 * net.spread_t, dZ1 * net.tile_t, (A1 .* dZ2_units) * net.tile_t, sum(dZ2, 2)];
if nargout > 2
    forward = struct('Z1', Z1, 'A1', A1, 'Z2', Z2, 'A2', A2);
end
end
