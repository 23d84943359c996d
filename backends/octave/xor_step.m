function xor_step(step_file, states_file, out_file)
% XOR_STEP  One training step from each of a batch of recorded states, every phase's
% values written out: the lockstep check of the harness (harness/engine/lockstep.py).
%
%   xor_step('step.json', 'states.f64', 'phases.f64')
%
% step.json is an init file (xor_train) with three more entries: count (B, the number
% of states), slots (the optimizer's state slots in the order the states file holds
% them, comma-separated, e.g. 'm,v') and phases (the optimizer's phases in the order to
% write them, e.g. 'm,v,update'). states.f64 holds B records of little-endian float64:
% the parameters (4H+1, the exchange order), each slot the same way, then the number of
% steps taken. phases.f64 gets B records: Z1, A1 (4 x H, row by row), Z2, A2 (4), the
% loss, the gradient (4H+1), each of the optimizer's phases (4H+1 each) and the new
% parameters (4H+1).
init = jsondecode(fileread(step_file));
cfg = init.config;
slots = names(init.slots);
phases = names(init.phases);
p = numel(init.flat);
width = p * (1 + numel(slots)) + 1;

fid = fopen(states_file, 'r', 'ieee-le');
if fid < 0
    error('xor_step:read', 'cannot read %s', states_file);
end
records = fread(fid, [width, init.count], 'double')';
fclose(fid);
if ~isequal(size(records), [init.count, width])
    error('xor_step:read', '%s holds %d numbers, not %d records of %d', states_file, numel(records), init.count, width);
end
S = struct();
for i = 1:numel(slots)
    S.(slots{i}) = records(:, p * i + 1:p * (i + 1));
end
theta = records(:, 1:p);
net = xor_net(init.X, init.y, cfg.hidden, cfg.grad);
[loss, g, f] = xor_gradients(theta, net);
[update, S] = xor_rule(g, S, theta, records(:, end) + 1, cfg);

out = [f.Z1, f.A1, f.Z2, f.A2, loss, g];
for i = 1:numel(phases)
    if strcmp(phases{i}, 'update')
        out = [out, update];
    else
        out = [out, S.(phases{i})];
    end
end
out = [out, theta - update];
fid = fopen(out_file, 'w', 'ieee-le');
if fid < 0
    error('xor_step:write', 'cannot write %s', out_file);
end
fwrite(fid, out', 'double');
fclose(fid);
end


function list = names(text)
% 'm,v' as {'m', 'v'}; '' as {}.
if isempty(text)
    list = {};
else
    list = strsplit(text, ',');
end
end
